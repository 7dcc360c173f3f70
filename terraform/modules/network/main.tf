# Optional private network for the cluster, routed to the public network so that the server's
# floating IP works. Without it, nodes sit on the shared network (sharednet1).

data "openstack_networking_network_v2" "external" {
  name     = var.external_network_name
  external = true
}

resource "openstack_networking_network_v2" "this" {
  name           = var.name
  admin_state_up = true
  tags           = var.tags
}

resource "openstack_networking_subnet_v2" "this" {
  name            = var.name
  network_id      = openstack_networking_network_v2.this.id
  cidr            = var.cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers
  tags            = var.tags
}

resource "openstack_networking_router_v2" "this" {
  name                = var.name
  admin_state_up      = true
  external_network_id = data.openstack_networking_network_v2.external.id
  tags                = var.tags
}

resource "openstack_networking_router_interface_v2" "this" {
  router_id = openstack_networking_router_v2.this.id
  subnet_id = openstack_networking_subnet_v2.this.id
}
