# The provider's version is pinned here and in the root; Terraform's own version by the root.
terraform {
  required_providers {
    openstack = { source = "terraform-provider-openstack/openstack", version = "3.3.2" }
  }
}
