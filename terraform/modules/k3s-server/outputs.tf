output "id" {
  description = "Instance ID of the k3s server."
  value       = openstack_compute_instance_v2.server.id
}

output "name" {
  description = "Instance name of the k3s server."
  value       = openstack_compute_instance_v2.server.name
}

output "private_ip" {
  description = "Address of the server's port on the node network, known before the instance exists; agents join https://<private_ip>:6443."
  value       = openstack_networking_port_v2.server.all_fixed_ips[0]
}

output "floating_ip" {
  description = "Public address of the server: SSH jump host, Kubernetes API and ingress."
  value       = openstack_networking_floatingip_associate_v2.server.floating_ip
}

output "api_url" {
  description = "Kubernetes API URL for clients outside the cluster."
  value       = "https://${openstack_networking_floatingip_associate_v2.server.floating_ip}:6443"
}
