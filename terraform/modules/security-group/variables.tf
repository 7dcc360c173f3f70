variable "name" {
  type        = string
  description = "Name of the security group (the deployment name is a good prefix)."
}

variable "admin_cidr" {
  type        = string
  description = "The only source allowed to reach SSH (22) and the Kubernetes API (6443), e.g. 198.51.100.7/32."
}

variable "ingress_cidr" {
  type        = string
  description = "Sources allowed to reach the HTTP(S) ingress on 80/443 (model endpoints, UIs)."
  default     = "0.0.0.0/0"

  validation {
    condition     = can(cidrhost(var.ingress_cidr, 0))
    error_message = "ingress_cidr must be an IPv4 CIDR."
  }
}

variable "tags" {
  type        = list(string)
  description = "Neutron tags marking what chiml created (so that only those are ever adopted or deleted)."
  default     = []
}
