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

  validation {
    condition     = length(var.key_name) > 0
    error_message = "key_name must name an existing keypair."
  }
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

variable "server" {
  type = object({
    reservation_id = optional(string)
    flavor_id      = optional(string)
  })
  description = "Where the k3s server runs: its Blazar node reservation (bare metal) or its reserved flavor (KVM@TACC), exactly one of the two."

  validation {
    condition     = (var.server.reservation_id == null) != (var.server.flavor_id == null)
    error_message = "server needs exactly one of reservation_id (bare metal) and flavor_id (KVM@TACC)."
  }

  validation {
    condition     = var.server.reservation_id == null || can(regex("^[0-9a-f-]{36}$", coalesce(var.server.reservation_id, "x")))
    error_message = "server.reservation_id must be a UUID."
  }
}

variable "agents" {
  type = map(object({
    count          = number
    reservation_id = optional(string)
    flavor_id      = optional(string)
  }))
  description = "Agent groups by kind, `cpu` (on `image`) and `gpu` (on `gpu_image`, with the NVIDIA container toolkit): how many, and the reservation (bare metal) or reserved flavor (KVM@TACC) each group with agents runs on."
  default     = {}

  validation {
    condition     = alltrue([for kind in keys(var.agents) : contains(["cpu", "gpu"], kind)])
    error_message = "agents takes the kinds cpu and gpu."
  }

  validation {
    condition     = alltrue([for group in values(var.agents) : group.count >= 0 && group.count <= 32 && floor(group.count) == group.count])
    error_message = "Each agent group's count must be a whole number between 0 and 32."
  }

  validation {
    condition     = alltrue([for group in values(var.agents) : group.count == 0 || (group.reservation_id == null) != (group.flavor_id == null)])
    error_message = "Each agent group with agents needs exactly one of reservation_id (bare metal) and flavor_id (KVM@TACC)."
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

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+-[0-9]+$", var.nvidia_toolkit_version))
    error_message = "nvidia_toolkit_version must be an apt version such as 1.17.8-1."
  }
}

variable "registry_mirror" {
  type        = string
  description = "Pull-through mirror for docker.io (all sharednet1 hosts share one address towards Docker Hub's rate limit), e.g. https://mirror.example.org; null for none."
  default     = null

  validation {
    condition     = var.registry_mirror == null || can(regex("^https?://", coalesce(var.registry_mirror, "x")))
    error_message = "registry_mirror must be an http(s) URL."
  }
}
