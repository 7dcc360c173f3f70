locals {
  gpu_labels = var.gpu ? { "chiml.io/gpu" = "true", "nvidia.com/gpu.present" = "true" } : { "chiml.io/gpu" = "false" }
  labels     = merge({ "chiml.io/role" = "agent" }, local.gpu_labels, var.node_labels)

  # Agents read the server URL and token from /etc/rancher/k3s/config.yaml rather than from
  # K3S_URL/K3S_TOKEN, which would end up in the systemd unit's environment file.
  k3s_config = {
    "server"     = var.server_url
    "token"      = var.k3s_token
    "node-label" = [for k, v in local.labels : "${k}=${v}"]
  }

  user_data = templatefile("${path.module}/templates/agent.cloud-init.yaml.tftpl", {
    k3s_config      = yamlencode(local.k3s_config)
    registry_mirror = var.registry_mirror
    gpu             = var.gpu
    # templatefile() cannot be nested inside a template: render the scripts here.
    firewall_script = templatefile("${path.module}/templates/firewall.sh.tftpl", {
      cluster_cidr = var.cluster_cidr
      admin_cidr   = var.admin_cidr
      admin_ports  = [22]
    })
    nvidia_toolkit_script = templatefile("${path.module}/templates/nvidia-toolkit.sh.tftpl", {
      version = var.nvidia_toolkit_version
    })
    bootstrap_script = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
      k3s_version = var.k3s_version
      gpu         = var.gpu
    })
  })
}

resource "openstack_compute_instance_v2" "agent" {
  count = var.agent_count

  name            = "${var.name_prefix}-${count.index}"
  image_name      = var.image_name
  flavor_id       = var.flavor_id
  flavor_name     = var.flavor_id == null ? var.flavor_name : null
  key_pair        = var.key_name
  security_groups = var.security_group_names
  user_data       = local.user_data
  metadata = {
    "chiml-role"       = var.gpu ? "gpu-agent" : "cpu-agent"
    "chiml-deployment" = var.deployment
  }

  network {
    uuid = var.network_id
  }

  dynamic "scheduler_hints" {
    for_each = var.reservation_id == null ? [] : [var.reservation_id]
    content {
      additional_properties = {
        reservation = scheduler_hints.value
      }
    }
  }

  lifecycle {
    ignore_changes = [user_data]

    precondition {
      condition     = (var.reservation_id == null) != (var.flavor_id == null)
      error_message = "Agents need exactly one of reservation_id (bare metal) and flavor_id (the reserved flavor on KVM@TACC)."
    }

    precondition {
      condition     = !var.gpu || can(regex("-CUDA$", var.image_name))
      error_message = "GPU agents need a -CUDA image (it carries the NVIDIA driver)."
    }
  }
}
