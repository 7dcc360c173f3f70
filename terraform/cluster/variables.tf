variable "region" {
  type        = string
  description = "Chameleon site (OpenStack region): CHI@UC or CHI@TACC (bare metal), KVM@TACC (VMs)."
  default     = "CHI@UC"

  validation {
    condition     = contains(["CHI@UC", "CHI@TACC", "KVM@TACC"], var.region)
    error_message = "region must be CHI@UC, CHI@TACC or KVM@TACC."
  }
}

variable "deployment" {
  type        = string
  description = "Unique deployment name (chiml derives it from the configured name and the user): prefix of every instance, the security group, the port and the private network."
  default     = "chiml"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,46}$", var.deployment))
    error_message = "deployment must be lower-case letters, digits and dashes, at most 47 characters (chiml appends a per-user suffix to the configured name)."
  }
}

variable "key_name" {
  type        = string
  description = "Existing Chameleon keypair (by name) for the `cc` user on every node."
}

variable "admin_cidr" {
  type        = string
  description = "Only source allowed to SSH and the Kubernetes API (chiml defaults it to the address `up` runs from)."

  validation {
    condition     = can(cidrhost(var.admin_cidr, 0))
    error_message = "admin_cidr must be an IPv4 CIDR such as 198.51.100.7/32."
  }
}

variable "network_name" {
  type        = string
  description = "Shared network the nodes use when private_network is false."
  default     = "sharednet1"
}

variable "private_network" {
  type        = bool
  description = "Put the nodes on a private network of their own (routed to public) instead of the shared one."
  default     = false
}

variable "image" {
  type        = string
  description = "Image of the server and the CPU agents."
  default     = "CC-Ubuntu22.04"

  validation {
    condition     = can(regex("^CC-Ubuntu2[24]\\.04(-CUDA)?$", var.image))
    error_message = "image must be CC-Ubuntu22.04, CC-Ubuntu24.04 or a -CUDA variant."
  }
}

variable "gpu_image" {
  type        = string
  description = "Image of the GPU agents: a -CUDA image (it carries the NVIDIA driver)."
  default     = "CC-Ubuntu22.04-CUDA"

  validation {
    condition     = can(regex("^CC-Ubuntu2[24]\\.04-CUDA$", var.gpu_image))
    error_message = "gpu_image must be CC-Ubuntu22.04-CUDA or CC-Ubuntu24.04-CUDA."
  }
}

variable "server_reservation_id" {
  type        = string
  description = "Bare metal: Blazar node reservation the k3s server is scheduled on (null on KVM@TACC)."
  default     = null

  validation {
    condition     = var.server_reservation_id == null || can(regex("^[0-9a-f-]{36}$", coalesce(var.server_reservation_id, "x")))
    error_message = "server_reservation_id must be a UUID."
  }
}

variable "server_flavor_id" {
  type        = string
  description = "KVM@TACC: ID of the reserved flavor (from the lease's flavor reservation) of the k3s server (null on bare metal)."
  default     = null

  validation {
    condition     = var.server_flavor_id == null || can(regex("^[0-9a-zA-Z-]+$", coalesce(var.server_flavor_id, "x")))
    error_message = "server_flavor_id must be a flavor ID."
  }
}

variable "cpu_agent_count" {
  type        = number
  description = "Number of CPU agents."
  default     = 0

  validation {
    condition     = var.cpu_agent_count >= 0 && var.cpu_agent_count <= 32
    error_message = "cpu_agent_count must be between 0 and 32."
  }
}

variable "cpu_agent_reservation_id" {
  type        = string
  description = "Bare metal: Blazar node reservation of the CPU agents (null when there are none, and on KVM@TACC)."
  default     = null
}

variable "cpu_agent_flavor_id" {
  type        = string
  description = "KVM@TACC: ID of the reserved flavor of the CPU agents (null when there are none, and on bare metal)."
  default     = null

  validation {
    condition     = var.cpu_agent_flavor_id == null || can(regex("^[0-9a-zA-Z-]+$", coalesce(var.cpu_agent_flavor_id, "x")))
    error_message = "cpu_agent_flavor_id must be a flavor ID."
  }
}

variable "gpu_agent_count" {
  type        = number
  description = "Number of GPU agents."
  default     = 0

  validation {
    condition     = var.gpu_agent_count >= 0 && var.gpu_agent_count <= 32
    error_message = "gpu_agent_count must be between 0 and 32."
  }
}

variable "gpu_agent_reservation_id" {
  type        = string
  description = "Bare metal: Blazar node reservation of the GPU agents (null when there are none, and on KVM@TACC)."
  default     = null
}

variable "gpu_agent_flavor_id" {
  type        = string
  description = "KVM@TACC: ID of the reserved flavor of the GPU agents (null when there are none, and on bare metal)."
  default     = null

  validation {
    condition     = var.gpu_agent_flavor_id == null || can(regex("^[0-9a-zA-Z-]+$", coalesce(var.gpu_agent_flavor_id, "x")))
    error_message = "gpu_agent_flavor_id must be a flavor ID."
  }
}

variable "floating_ip_address" {
  type        = string
  description = "Floating IP reserved in the lease for the server; null allocates one from the public pool."
  default     = null
}

variable "k3s_version" {
  type        = string
  description = "Pinned k3s release of every node."
  default     = "v1.33.2+k3s1"

  validation {
    condition     = can(regex("^v1\\.[0-9]+\\.[0-9]+\\+k3s[0-9]+$", var.k3s_version))
    error_message = "k3s_version must look like v1.33.2+k3s1."
  }
}

variable "nvidia_toolkit_version" {
  type        = string
  description = "Pinned NVIDIA container toolkit apt version on GPU agents."
  default     = "1.17.8-1"
}

variable "registry_mirror" {
  type        = string
  description = "Pull-through mirror for docker.io (all sharednet1 hosts share one address towards Docker Hub's rate limit); null for none."
  default     = null
}
