output "nodes" {
  description = "One object per node: name, private_ip and gpu flag (agents are reached through the server)."
  value = [for instance in openstack_compute_instance_v2.this : {
    name       = instance.name
    private_ip = instance.access_ip_v4
    gpu        = var.gpu
  }]
}

output "private_ip" {
  description = "Server only: the address of its port, known before the instance exists; agents join https://<private_ip>:6443."
  value       = one(openstack_networking_port_v2.server[*].all_fixed_ips[0])
}

output "floating_ip" {
  description = "Server only: its public address (SSH jump host, Kubernetes API and ingress)."
  value       = one(openstack_networking_floatingip_associate_v2.server[*].floating_ip)
}
