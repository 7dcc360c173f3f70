# Runnable example for terraform/cluster on KVM@TACC. Reserve flavors on KVM@TACC first (a flavor reservation is
# required there) and copy the reserved flavors' IDs and the reserved floating IP here:
#   cd terraform/cluster && terraform init && terraform apply -var-file=../examples/kvm.tfvars
region              = "KVM@TACC"
deployment          = "chiml-example"
key_name            = "my-chameleon-key"
admin_cidr          = "198.51.100.7/32"
image               = "CC-Ubuntu22.04"
gpu_image           = "CC-Ubuntu22.04-CUDA"
server_flavor_id    = "9b3cd6b9-0f6a-4ad4-a5d2-5d1bc0e8a001"
gpu_agent_count     = 1
gpu_agent_flavor_id = "9b3cd6b9-0f6a-4ad4-a5d2-5d1bc0e8a002"
floating_ip_address = "129.114.109.10"
