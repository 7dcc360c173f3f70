output "nodes" {
  description = "One object per agent: name, private_ip and gpu flag (the wrapper reaches them through the server)."
  value = [for instance in openstack_compute_instance_v2.agent : {
    name       = instance.name
    private_ip = instance.access_ip_v4
    gpu        = var.gpu
  }]
}
