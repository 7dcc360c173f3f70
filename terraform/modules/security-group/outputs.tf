output "id" {
  description = "ID of the security group."
  value       = openstack_networking_secgroup_v2.this.id
}

output "name" {
  description = "Name of the security group (instances reference it by name)."
  value       = openstack_networking_secgroup_v2.this.name
}
