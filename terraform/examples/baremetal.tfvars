# Runnable example for terraform/cluster on bare metal (chiml writes its own tfvars from chiml.yaml; this is
# for using the modules by hand). Make a lease first, e.g. with the Chameleon GUI or
# `openstack reservation lease create`, and copy its reservation IDs and floating IP here:
#   cd terraform/cluster && terraform init && terraform apply -var-file=../examples/baremetal.tfvars
region                   = "CHI@UC"
deployment               = "chiml-example"
key_name                 = "my-chameleon-key"
admin_cidr               = "198.51.100.7/32"
image                    = "CC-Ubuntu22.04"
gpu_image                = "CC-Ubuntu22.04-CUDA"
server_reservation_id    = "00000000-0000-4000-8000-000000000001"
gpu_agent_count          = 1
gpu_agent_reservation_id = "00000000-0000-4000-8000-000000000002"
floating_ip_address      = "192.5.87.10"
k3s_version              = "v1.33.2+k3s1"
