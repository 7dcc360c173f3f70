output "network_id" {
  description = "ID of the private network (instances attach to it)."
  value       = openstack_networking_network_v2.this.id
}

output "subnet_cidr" {
  description = "CIDR of the private subnet (trusted by the nodes' firewall)."
  value       = openstack_networking_subnet_v2.this.cidr
}

output "router_interface_id" {
  description = "ID of the router interface; depend on it before associating floating IPs."
  value       = openstack_networking_router_interface_v2.this.id
}
