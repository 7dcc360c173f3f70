# k3s cluster on Chameleon: bare metal at CHI@UC / CHI@TACC, VMs at KVM@TACC. The Blazar lease is
# made outside Terraform (the provider has no Blazar resource): chiml passes, per node group, the
# node reservation ID (bare metal: the `reservation` scheduler hint, flavor `baremetal`) or the
# reserved flavor's ID (KVM@TACC, where a flavor reservation is required since 2025), and the
# reserved floating IP. KVM enforces security groups (all inbound blocked by default); bare-metal
# images run firewalld, configured by cloud-init with the same policy.

data "openstack_networking_network_v2" "shared" {
  count = var.private_network ? 0 : 1
  name  = var.network_name
}

data "openstack_networking_subnet_v2" "shared" {
  count      = var.private_network ? 0 : 1
  network_id = data.openstack_networking_network_v2.shared[0].id
}

module "network" {
  source = "../modules/network"
  count  = var.private_network ? 1 : 0

  name = var.deployment
  tags = local.tags
}

locals {
  # chiml marks every Neutron resource it creates; var.deployment is already unique per user.
  tags = ["chiml", "chiml-deployment=${var.deployment}"]

  network_id   = var.private_network ? module.network[0].network_id : data.openstack_networking_network_v2.shared[0].id
  cluster_cidr = var.private_network ? module.network[0].subnet_cidr : data.openstack_networking_subnet_v2.shared[0].cidr
}

resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

module "security_group" {
  source = "../modules/security-group"

  name       = var.deployment
  admin_cidr = var.admin_cidr
  tags       = local.tags
}

module "server" {
  source = "../modules/k3s-server"

  name                = "${var.deployment}-server"
  image_name          = var.image
  flavor_name         = "baremetal"
  reservation_id      = var.server_reservation_id
  flavor_id           = var.server_flavor_id
  key_name            = var.key_name
  network_id          = local.network_id
  security_group_ids  = [module.security_group.id]
  deployment          = var.deployment
  tags                = local.tags
  floating_ip_address = var.floating_ip_address
  k3s_version         = var.k3s_version
  k3s_token           = random_password.k3s_token.result
  cluster_cidr        = local.cluster_cidr
  admin_cidr          = var.admin_cidr
  registry_mirror     = var.registry_mirror

  depends_on = [module.network]
}

module "cpu_agents" {
  source = "../modules/k3s-agents"

  name_prefix          = "${var.deployment}-cpu"
  agent_count          = var.cpu_agent_count
  image_name           = var.image
  flavor_name          = "baremetal"
  reservation_id       = var.cpu_agent_reservation_id
  flavor_id            = var.cpu_agent_flavor_id
  key_name             = var.key_name
  network_id           = local.network_id
  deployment           = var.deployment
  security_group_names = [module.security_group.name]
  server_url           = "https://${module.server.private_ip}:6443"
  k3s_version          = var.k3s_version
  k3s_token            = random_password.k3s_token.result
  cluster_cidr         = local.cluster_cidr
  admin_cidr           = var.admin_cidr
  registry_mirror      = var.registry_mirror
}

module "gpu_agents" {
  source = "../modules/k3s-agents"

  name_prefix            = "${var.deployment}-gpu"
  agent_count            = var.gpu_agent_count
  gpu                    = true
  image_name             = var.gpu_image
  flavor_name            = "baremetal"
  reservation_id         = var.gpu_agent_reservation_id
  flavor_id              = var.gpu_agent_flavor_id
  key_name               = var.key_name
  network_id             = local.network_id
  deployment             = var.deployment
  security_group_names   = [module.security_group.name]
  server_url             = "https://${module.server.private_ip}:6443"
  k3s_version            = var.k3s_version
  k3s_token              = random_password.k3s_token.result
  cluster_cidr           = local.cluster_cidr
  admin_cidr             = var.admin_cidr
  registry_mirror        = var.registry_mirror
  nvidia_toolkit_version = var.nvidia_toolkit_version
}
