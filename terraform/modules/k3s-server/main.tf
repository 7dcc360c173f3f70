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
    registry_mirror = var.registry_mirror
    # templatefile() cannot be nested inside a template: render the scripts here.
    firewall_script = templatefile("${path.module}/templates/firewall.sh.tftpl", {
      cluster_cidr = var.cluster_cidr
      admin_cidr   = var.admin_cidr
      admin_ports  = [22, 6443]
    })
    bootstrap_script = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
      k3s_version = var.k3s_version
    })
  })
}

# Allocated only when the lease carries no floating IP reservation.
resource "openstack_networking_floatingip_v2" "allocated" {
  count = var.floating_ip_address == null ? 1 : 0

  pool        = var.floating_ip_pool
  description = "chiml k3s server ${var.name}"
}

# The server's port is created first, so its address is known before the instance exists: the
# agents join https://<this address>:6443 and are created in parallel with the server instead
# of waiting until it is ACTIVE (10-20 minutes on bare metal). Security groups go on the port
# (the provider ignores an instance's security_groups for networks attached by port).
resource "openstack_networking_port_v2" "server" {
  name               = var.name
  network_id         = var.network_id
  admin_state_up     = true
  security_group_ids = var.security_group_ids
  tags               = var.tags
}

resource "openstack_compute_instance_v2" "server" {
  name        = var.name
  image_name  = var.image_name
  flavor_id   = var.flavor_id
  flavor_name = var.flavor_id == null ? var.flavor_name : null
  key_pair    = var.key_name
  user_data   = local.user_data
  metadata = {
    "chiml-role"       = "server"
    "chiml-deployment" = var.deployment
  }

  network {
    port = openstack_networking_port_v2.server.id
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

    precondition {
      condition     = (var.reservation_id == null) != (var.flavor_id == null)
      error_message = "The server needs exactly one of reservation_id (bare metal) and flavor_id (the reserved flavor on KVM@TACC)."
    }
  }
}

# Provider 3.x removed openstack_compute_floatingip_associate_v2: associate through Neutron.
# Associated once the instance is up (a port without a bound device has no route yet).
resource "openstack_networking_floatingip_associate_v2" "server" {
  floating_ip = local.floating_ip
  port_id     = openstack_networking_port_v2.server.id

  depends_on = [openstack_compute_instance_v2.server]
}
