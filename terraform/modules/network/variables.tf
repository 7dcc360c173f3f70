variable "name" {
  type        = string
  description = "Name prefix of the network, subnet and router."
}

variable "cidr" {
  type        = string
  description = "IPv4 range of the private subnet."
  default     = "192.168.90.0/24"

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && !can(regex("^10\\.4[23]\\.", var.cidr))
    error_message = "cidr must be an IPv4 CIDR outside k3s's pod (10.42.0.0/16) and service (10.43.0.0/16) ranges."
  }
}

variable "external_network_name" {
  type        = string
  description = "Network the router's gateway and floating IPs come from (Chameleon: public)."
  default     = "public"
}

variable "dns_nameservers" {
  type        = list(string)
  description = "DNS servers handed out by the subnet's DHCP."
  default     = ["8.8.8.8", "8.8.4.4"]
}

variable "tags" {
  type        = list(string)
  description = "Neutron tags marking what chiml created (so that only those are ever adopted or deleted)."
  default     = []
}
