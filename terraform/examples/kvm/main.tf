# Virtual machines at KVM@TACC, where every instance needs a flavor reservation: the k3s server
# and two CPU agents, on their own private network. Reserve the flavors and a floating IP first,
# then copy each reservation's reserved flavor ID (`openstack flavor list --all`: the flavor
# named reservation:<reservation id>) and the address below, then:
#   terraform init && terraform apply

module "cluster" {
  source = "../.."

  region          = "KVM@TACC"
  deployment      = "chiml-kvm-example"
  key_name        = "my-chameleon-key"
  admin_cidr      = "198.51.100.7/32"
  private_network = true

  server = { flavor_id = "9b3cd6b9-0f6a-4ad4-a5d2-5d1bc0e8a001" }
  agents = {
    cpu = { count = 2, flavor_id = "9b3cd6b9-0f6a-4ad4-a5d2-5d1bc0e8a002" }
  }
  floating_ip_address = "129.114.109.10"
}

output "api_url" {
  description = "The cluster's Kubernetes API."
  value       = module.cluster.api_url
}

output "ssh" {
  description = "How to reach the server (the jump host for the agents)."
  value       = "ssh ${module.cluster.ssh_user}@${module.cluster.server.floating_ip}"
}
