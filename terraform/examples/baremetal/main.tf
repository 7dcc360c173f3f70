# A GPU cluster on bare metal at CHI@UC: the k3s server on one reserved host, one GPU agent on
# another, both CC-Ubuntu images. Reserve the hosts and a floating IP first (the Chameleon GUI or
# `openstack reservation lease create`), put the lease's reservation IDs and address below, then:
#   terraform init && terraform apply
# (chiml does all of this itself from chiml.yaml: `chiml up --profile chameleon`.)

module "cluster" {
  source = "../.."

  region     = "CHI@UC"
  deployment = "chiml-baremetal-example"
  key_name   = "my-chameleon-key"
  admin_cidr = "198.51.100.7/32" # your public address: SSH and the Kubernetes API

  server = { reservation_id = "00000000-0000-4000-8000-000000000001" }
  agents = {
    gpu = { count = 1, reservation_id = "00000000-0000-4000-8000-000000000002" }
  }
  gpu_image           = "CC-Ubuntu22.04-CUDA"
  floating_ip_address = "192.5.87.10"
}

output "api_url" {
  description = "The cluster's Kubernetes API; `ssh cc@<server floating IP> sudo cat /etc/rancher/k3s/k3s.yaml` gives its kubeconfig."
  value       = module.cluster.api_url
}

output "nodes" {
  description = "The server and the agents."
  value       = concat([module.cluster.server], module.cluster.agents)
}
