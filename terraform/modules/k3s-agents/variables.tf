variable "name_prefix" {
  type        = string
  description = "Agents are named <name_prefix>-<index>; names must be unique in the project."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,58}$", var.name_prefix))
    error_message = "name_prefix must be lower-case letters, digits and dashes, at most 59 characters."
  }
}

variable "agent_count" {
  type        = number
  description = "Number of agents in this group (0 creates none)."
  default     = 1

  validation {
    condition     = var.agent_count >= 0 && var.agent_count <= 32 && floor(var.agent_count) == var.agent_count
    error_message = "agent_count must be a whole number between 0 and 32."
  }
}

variable "gpu" {
  type        = bool
  description = "GPU agents get the NVIDIA container toolkit before k3s starts and the GPU labels; use a -CUDA image."
  default     = false
}

variable "nvidia_toolkit_version" {
  type        = string
  description = "Pinned NVIDIA container toolkit apt version for GPU agents."
  default     = "1.17.8-1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+-[0-9]+$", var.nvidia_toolkit_version))
    error_message = "nvidia_toolkit_version must be an apt version such as 1.17.8-1."
  }
}

variable "server_url" {
  type        = string
  description = "k3s server URL the agents join, on the node network: https://<server private IP>:6443."

  validation {
    condition     = can(regex("^https://[^/]+:6443$", var.server_url))
    error_message = "server_url must look like https://10.140.81.12:6443."
  }
}

variable "image_name" {
  type        = string
  description = "Glance image, e.g. CC-Ubuntu22.04 or CC-Ubuntu24.04."
  default     = "CC-Ubuntu22.04"

  validation {
    condition     = can(regex("^CC-Ubuntu2[24]\\.04(-CUDA)?$", var.image_name))
    error_message = "image_name must be CC-Ubuntu22.04, CC-Ubuntu24.04 or their -CUDA variants."
  }
}

variable "flavor_name" {
  type        = string
  description = "Flavor by name (bare metal: baremetal). Ignored when flavor_id is set."
  default     = "baremetal"
}

variable "flavor_id" {
  type        = string
  description = "Flavor by ID; on KVM@TACC the reserved flavor of the lease's flavor reservation."
  default     = null
}

variable "reservation_id" {
  type        = string
  description = "Blazar node reservation ID passed as the `reservation` scheduler hint (bare metal); null on KVM."
  default     = null

  validation {
    condition     = var.reservation_id == null || can(regex("^[0-9a-f-]{36}$", var.reservation_id))
    error_message = "reservation_id must be a UUID."
  }
}

variable "key_name" {
  type        = string
  description = "Existing Nova keypair injected for the `cc` user (agents are reached through the server as jump host)."

  validation {
    condition     = length(var.key_name) > 0
    error_message = "key_name must name an existing keypair."
  }
}

variable "network_id" {
  type        = string
  description = "Network the server is attached to (sharednet1 or the private network)."
}

variable "security_group_names" {
  type        = list(string)
  description = "Security groups attached to the server (enforced on KVM)."
  default     = []
}

variable "deployment" {
  type        = string
  description = "Unique name of the deployment (per user): recorded in the instance metadata so that its resources can be told apart."
}

variable "k3s_version" {
  type        = string
  description = "Pinned k3s release (also selects the install script at that tag)."

  validation {
    condition     = can(regex("^v1\\.[0-9]+\\.[0-9]+\\+k3s[0-9]+$", var.k3s_version))
    error_message = "k3s_version must look like v1.33.2+k3s1."
  }
}

variable "k3s_token" {
  type        = string
  description = "Shared secret agents join with."
  sensitive   = true

  validation {
    condition     = length(var.k3s_token) >= 32
    error_message = "k3s_token must be at least 32 characters."
  }
}

variable "cluster_cidr" {
  type        = string
  description = "CIDR of the node network, trusted by firewalld on every node."

  validation {
    condition     = can(cidrhost(var.cluster_cidr, 0))
    error_message = "cluster_cidr must be an IPv4 CIDR."
  }
}

variable "admin_cidr" {
  type        = string
  description = "The only source allowed to reach SSH and the Kubernetes API (firewalld rule on bare metal)."

  validation {
    condition     = can(cidrhost(var.admin_cidr, 0))
    error_message = "admin_cidr must be an IPv4 CIDR."
  }
}

variable "registry_mirror" {
  type        = string
  description = "Pull-through registry mirror for docker.io (k3s registries.yaml), e.g. https://mirror.example.org; null for none."
  default     = null

  validation {
    condition     = var.registry_mirror == null || can(regex("^https?://", var.registry_mirror))
    error_message = "registry_mirror must be an http(s) URL."
  }
}

variable "node_labels" {
  type        = map(string)
  description = "Extra Kubernetes labels of every agent in the group."
  default     = {}
}
