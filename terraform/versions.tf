terraform {
  required_version = ">= 1.5.0"

  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "3.3.2"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
  }
}

# Credentials come from the OS_* variables of an application-credential openrc; chiml checks
# them before running Terraform.
provider "openstack" {
  region = var.region
}
