variable "role" {
  type        = string
  description = "server (one instance: the k3s server, with its port and floating IP) or agent (node_count instances joining server_url)."

  validation {
    condition     = contains(["server", "agent"], var.role)
    error_message = "role must be server or agent."
  }
}

variable "name" {
  type        = string
  description = "The server's instance name, or the agents' prefix (agents are named <name>-<index>); unique in the project."
}

variable "node_count" {
  type        = number
  description = "Agents: how many (0 creates none). The server is always one instance."
  default     = 1
}

variable "gpu" {
  type        = bool
  description = "GPU agents: the NVIDIA container toolkit is installed before k3s starts, and the GPU labels are set; needs a -CUDA image."
  default     = false
}

variable "image_name" {
  type        = string
  description = "Glance image, e.g. CC-Ubuntu22.04 or CC-Ubuntu24.04-CUDA."
}

variable "reservation_id" {
  type        = string
  description = "Bare metal: the Blazar node reservation, passed as the `reservation` scheduler hint. Exactly one of reservation_id and flavor_id."
  default     = null
}

variable "flavor_id" {
  type        = string
  description = "KVM@TACC: the reserved flavor of the lease's flavor reservation. Exactly one of reservation_id and flavor_id."
  default     = null
}

variable "flavor_name" {
  type        = string
  description = "Flavor by name when flavor_id is null (bare metal: baremetal)."
  default     = "baremetal"
}

variable "cluster" {
  type = object({
    deployment      = string
    tags            = list(string)
    key_name        = string
    network_id      = string
    cidr            = string
    admin_cidr      = string
    security_group  = object({ id = string, name = string })
    k3s_version     = string
    registry_mirror = optional(string)
  })
  description = "What every node of the cluster shares: the deployment's name and Neutron tags, keypair, network and its CIDR, the admin CIDR, the security group, the k3s release and the docker.io mirror."
}

variable "k3s_token" {
  type        = string
  description = "Shared secret of the cluster: the server's token, the one agents join with."
  sensitive   = true

  validation {
    condition     = length(var.k3s_token) >= 32
    error_message = "k3s_token must be at least 32 characters."
  }
}

variable "server_url" {
  type        = string
  description = "Agents: the server they join, on the node network (https://<server private IP>:6443)."
  default     = null
}

variable "floating_ip_address" {
  type        = string
  description = "Server: the floating IP reserved in the lease (Blazar creates it); null allocates one from floating_ip_pool."
  default     = null
}

variable "floating_ip_pool" {
  type        = string
  description = "Server: the pool a floating IP is allocated from when none is reserved."
  default     = "public"
}

variable "nvidia_toolkit_version" {
  type        = string
  description = "GPU agents: the pinned NVIDIA container toolkit apt version."
  default     = "1.17.8-1"
}

variable "node_labels" {
  type        = map(string)
  description = "Extra Kubernetes labels of every node of this module."
  default     = {}
}
