# The k3s nodes of one role: the server (one instance) or a group of agents. Each node boots a
# CC-Ubuntu image whose cloud-init writes the k3s configuration and runs one bootstrap script
# (firewall, the NVIDIA container toolkit on GPU agents, then k3s).

locals {
  is_server = var.role == "server"

  # The labels a node registers with (chiml places GPU work by `chiml.io/gpu`).
  gpu_labels = var.gpu ? { "chiml.io/gpu" = "true", "nvidia.com/gpu.present" = "true" } : { "chiml.io/gpu" = "false" }
  labels     = merge({ "chiml.io/role" = var.role }, local.is_server ? {} : local.gpu_labels, var.node_labels)

  # k3s reads /etc/rancher/k3s/config.yaml. The server puts its floating IP into the API
  # certificate (the kubeconfig chiml fetches points at it) and keeps the kubeconfig root-only
  # (chiml fetches it with sudo over SSH). Agents read the server URL and token from here rather
  # than from K3S_URL/K3S_TOKEN, which would end up in the systemd unit's environment file.
  k3s_config = merge(
    { "token" = var.k3s_token, "node-label" = [for k, v in local.labels : "${k}=${v}"] },
    local.is_server ? { "write-kubeconfig-mode" = "0600", "tls-san" = compact([local.floating_ip]) } : { "server" = var.server_url },
  )

  floating_ip = var.floating_ip_address != null ? var.floating_ip_address : one(openstack_networking_floatingip_v2.allocated[*].address)

  user_data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    k3s_config      = yamlencode(local.k3s_config)
    registry_mirror = var.cluster.registry_mirror
    gpu             = var.gpu
    # templatefile() cannot be nested inside a template: render the scripts here.
    firewall_script = templatefile("${path.module}/templates/firewall.sh.tftpl", {
      cluster_cidr = var.cluster.cidr
      admin_cidr   = var.cluster.admin_cidr
      admin_ports  = local.is_server ? [22, 6443] : [22]
    })
    nvidia_toolkit_script = templatefile("${path.module}/templates/nvidia-toolkit.sh.tftpl", {
      version = var.nvidia_toolkit_version
    })
    bootstrap_script = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
      k3s_version = var.cluster.k3s_version
      role        = var.role
      gpu         = var.gpu
    })
  })
}

# Server only, when the lease carries no floating IP reservation.
resource "openstack_networking_floatingip_v2" "allocated" {
  count = local.is_server && var.floating_ip_address == null ? 1 : 0

  pool        = var.floating_ip_pool
  description = "chiml k3s server ${var.name}"
}

# The server's port is created first, so its address is known before the instance exists: the
# agents join https://<this address>:6443 and are created in parallel with the server instead
# of waiting until it is ACTIVE (10-20 minutes on bare metal). Security groups go on the port
# (the provider ignores an instance's security_groups for networks attached by port).
resource "openstack_networking_port_v2" "server" {
  count = local.is_server ? 1 : 0

  name               = var.name
  network_id         = var.cluster.network_id
  admin_state_up     = true
  security_group_ids = [var.cluster.security_group.id]
  tags               = var.cluster.tags
}

resource "openstack_compute_instance_v2" "this" {
  count = local.is_server ? 1 : var.node_count

  name            = local.is_server ? var.name : "${var.name}-${count.index}"
  image_name      = var.image_name
  flavor_id       = var.flavor_id
  flavor_name     = var.flavor_id == null ? var.flavor_name : null
  key_pair        = var.cluster.key_name
  security_groups = local.is_server ? null : [var.cluster.security_group.name]
  user_data       = local.user_data
  metadata = {
    "chiml-role"       = local.is_server ? "server" : (var.gpu ? "gpu-agent" : "cpu-agent")
    "chiml-deployment" = var.cluster.deployment
  }

  network {
    port = local.is_server ? openstack_networking_port_v2.server[0].id : null
    uuid = local.is_server ? null : var.cluster.network_id
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
      error_message = "Nodes need exactly one of reservation_id (bare metal) and flavor_id (the reserved flavor on KVM@TACC)."
    }

    precondition {
      condition     = !var.gpu || can(regex("-CUDA$", var.image_name))
      error_message = "GPU nodes need a -CUDA image (it carries the NVIDIA driver)."
    }
  }
}

# Provider 3.x removed openstack_compute_floatingip_associate_v2: associate through Neutron.
# Associated once the instance is up (a port without a bound device has no route yet).
resource "openstack_networking_floatingip_associate_v2" "server" {
  count = local.is_server ? 1 : 0

  floating_ip = local.floating_ip
  port_id     = openstack_networking_port_v2.server[0].id

  depends_on = [openstack_compute_instance_v2.this]
}
