output "server" {
  description = "The k3s server: name, private_ip and floating_ip (SSH jump host, API, ingress)."
  value = {
    name        = module.server.nodes[0].name
    private_ip  = module.server.private_ip
    floating_ip = module.server.floating_ip
  }
}

output "agents" {
  description = "Every agent (CPU agents first): name, private_ip and gpu flag; reached through the server."
  value       = flatten([for group in module.agents : group.nodes])
}

output "api_url" {
  description = "Kubernetes API URL (the floating IP is in the certificate's SANs)."
  value       = "https://${module.server.floating_ip}:6443"
}

output "ssh_user" {
  description = "Login user of Chameleon's CC images."
  value       = "cc"
}
