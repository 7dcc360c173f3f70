output "server" {
  description = "The k3s server: name, private_ip and floating_ip (SSH jump host, API, ingress)."
  value = {
    name        = module.server.name
    private_ip  = module.server.private_ip
    floating_ip = module.server.floating_ip
  }
}

output "agents" {
  description = "Every agent: name, private_ip and gpu flag; reached through the server."
  value       = concat(module.cpu_agents.nodes, module.gpu_agents.nodes)
}

output "api_url" {
  description = "Kubernetes API URL (the floating IP is in the certificate's SANs)."
  value       = module.server.api_url
}

output "ssh_user" {
  description = "Login user of Chameleon's CC images."
  value       = "cc"
}
