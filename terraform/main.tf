# A k3s cluster on Chameleon: bare metal at CHI@UC / CHI@TACC, VMs at KVM@TACC. The Blazar lease is
# made outside Terraform (the provider has no Blazar resource): for the server and each agent group
# the caller passes the node reservation ID (bare metal: the `reservation` scheduler hint, flavor
# `baremetal`) or the reserved flavor's ID (KVM@TACC, where a flavor reservation is required since
# 2025), and the reserved floating IP. KVM enforces security groups (all inbound blocked by
# default); bare-metal images run firewalld, configured by cloud-init with the same policy.

data "openstack_networking_network_v2" "shared" {
  count = var.private_network ? 0 : 1
  name  = var.network_name
}

data "openstack_networking_subnet_v2" "shared" {
  count      = var.private_network ? 0 : 1
  network_id = data.openstack_networking_network_v2.shared[0].id
}

module "network" {
  source = "./modules/network"
  count  = var.private_network ? 1 : 0

  name = var.deployment
  tags = local.tags
}

locals {
  # chiml marks every Neutron resource it creates; var.deployment is already unique per user.
  tags = ["chiml", "chiml-deployment=${var.deployment}"]

  # What sets the agent groups apart: CPU agents run `image`, GPU agents `gpu_image` with the toolkit.
  agent_kinds = {
    cpu = { image = var.image, gpu = false }
    gpu = { image = var.gpu_image, gpu = true }
  }

  # What every node shares (the k3s token goes separately: it is sensitive).
  cluster = {
    deployment      = var.deployment
    tags            = local.tags
    key_name        = var.key_name
    network_id      = var.private_network ? module.network[0].network_id : data.openstack_networking_network_v2.shared[0].id
    cidr            = var.private_network ? module.network[0].subnet_cidr : data.openstack_networking_subnet_v2.shared[0].cidr
    admin_cidr      = var.admin_cidr
    security_group  = module.security_group
    k3s_version     = var.k3s_version
    registry_mirror = var.registry_mirror
  }
}

resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

module "security_group" {
  source = "./modules/security-group"

  name       = var.deployment
  admin_cidr = var.admin_cidr
  tags       = local.tags
}

module "server" {
  source = "./modules/k3s-node"

  role                = "server"
  name                = "${var.deployment}-server"
  image_name          = var.image
  reservation_id      = var.server.reservation_id
  flavor_id           = var.server.flavor_id
  cluster             = local.cluster
  k3s_token           = random_password.k3s_token.result
  floating_ip_address = var.floating_ip_address

  # the router's interface before the floating IP is associated
  depends_on = [module.network]
}

# Agents depend on the server's port only (its address), not on the server instance: both are
# created at once.
module "agents" {
  source   = "./modules/k3s-node"
  for_each = var.agents

  role                   = "agent"
  name                   = "${var.deployment}-${each.key}"
  node_count             = each.value.count
  gpu                    = local.agent_kinds[each.key].gpu
  image_name             = local.agent_kinds[each.key].image
  reservation_id         = each.value.reservation_id
  flavor_id              = each.value.flavor_id
  cluster                = local.cluster
  k3s_token              = random_password.k3s_token.result
  server_url             = "https://${module.server.private_ip}:6443"
  nvidia_toolkit_version = var.nvidia_toolkit_version
}
