variable "name" {
  type        = string
  description = "Instance name of the k3s server; names must be unique in the project (python-chi and the smoke tests find servers by name)."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be lower-case letters, digits and dashes, at most 63 characters."
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
  description = "Existing Nova keypair injected for the `cc` user."

  validation {
    condition     = length(var.key_name) > 0
    error_message = "key_name must name an existing keypair."
  }
}

variable "network_id" {
  type        = string
  description = "Network the server is attached to (sharednet1 or the private network)."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the server's port (enforced on KVM)."
  default     = []
}

variable "deployment" {
  type        = string
  description = "Unique name of the deployment (per user): recorded in the instance metadata so that its resources can be told apart."
}

variable "tags" {
  type        = list(string)
  description = "Neutron tags of the server's port (chiml marks what it created)."
  default     = []
}

variable "floating_ip_address" {
  type        = string
  description = "Floating IP already reserved in the lease (Blazar creates it); null allocates one from floating_ip_pool."
  default     = null

  validation {
    condition     = var.floating_ip_address == null || can(cidrhost("${coalesce(var.floating_ip_address, "0.0.0.0")}/32", 0))
    error_message = "floating_ip_address must be an IPv4 address."
  }
}

variable "floating_ip_pool" {
  type        = string
  description = "Pool a floating IP is allocated from when none is reserved."
  default     = "public"
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
  description = "Extra Kubernetes labels of the server node."
  default     = {}
}
