locals {
  # k3s reads /etc/rancher/k3s/config.yaml; the floating IP goes into the API certificate so that
  # the kubeconfig fetched by chiml can point at it. The kubeconfig stays root-only (0600): chiml
  # fetches it with sudo over SSH.
  k3s_config = {
    "write-kubeconfig-mode" = "0600"
    "tls-san"               = compact([local.floating_ip])
    "token"                 = var.k3s_token
    "node-label"            = [for k, v in merge({ "chiml.io/role" = "server" }, var.node_labels) : "${k}=${v}"]
  }

  floating_ip = var.floating_ip_address != null ? var.floating_ip_address : one(openstack_networking_floatingip_v2.allocated[*].address)

  user_data = templatefile("${path.module}/templates/server.cloud-init.yaml.tftpl", {
    k3s_config      = yamlencode(local.k3s_config)
    k3s_version     = var.k3s_version
    registry_mirror = var.registry_mirror
    # templatefile() cannot be nested inside a template: render the script here.
    firewall_script = templatefile("${path.module}/templates/firewall.sh.tftpl", {
      cluster_cidr = var.cluster_cidr
      admin_cidr   = var.admin_cidr
      admin_ports  = [22, 6443]
    })
  })
}

# Allocated only when the lease carries no floating IP reservation.
resource "openstack_networking_floatingip_v2" "allocated" {
  count = var.floating_ip_address == null ? 1 : 0

  pool        = var.floating_ip_pool
  description = "chiml k3s server ${var.name}"
}

resource "openstack_compute_instance_v2" "server" {
  name            = var.name
  image_name      = var.image_name
  flavor_id       = var.flavor_id
  flavor_name     = var.flavor_id == null ? var.flavor_name : null
  key_pair        = var.key_name
  security_groups = var.security_group_names
  user_data       = local.user_data
  metadata = {
    "chiml-role" = "server"
  }

  network {
    uuid = var.network_id
  }

  # Bare metal: the host must come from the lease's node reservation.
  dynamic "scheduler_hints" {
    for_each = var.reservation_id == null ? [] : [var.reservation_id]
    content {
      additional_properties = {
        reservation = scheduler_hints.value
      }
    }
  }

  lifecycle {
    # A changed cloud-init must not silently rebuild a bare-metal node (and lose its data).
    ignore_changes = [user_data]
  }
}

data "openstack_networking_port_v2" "server" {
  device_id  = openstack_compute_instance_v2.server.id
  network_id = var.network_id
}

# Provider 3.x removed openstack_compute_floatingip_associate_v2: associate through Neutron.
resource "openstack_networking_floatingip_associate_v2" "server" {
  floating_ip = local.floating_ip
  port_id     = data.openstack_networking_port_v2.server.id
}
