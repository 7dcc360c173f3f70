# KVM@TACC enforces security groups (all inbound is blocked by default); on bare metal they are
# not enforced and the same policy is applied by firewalld from cloud-init instead.

resource "openstack_networking_secgroup_v2" "this" {
  name                 = var.name
  description          = "chiml k3s cluster: SSH and the Kubernetes API from the admin CIDR, HTTP(S) ingress, all traffic between members"
  delete_default_rules = false
  tags                 = var.tags
}

# TCP from outside: SSH and the Kubernetes API only from the operator's address, and the ingress
# controller (Traefik on k3s, serving endpoints and UIs) from ingress_cidr.
locals {
  tcp = {
    ssh      = { port = 22, from = var.admin_cidr, description = "ssh from the admin CIDR" }
    kube_api = { port = 6443, from = var.admin_cidr, description = "kube_api from the admin CIDR" }
    http     = { port = 80, from = var.ingress_cidr, description = "http ingress" }
    https    = { port = 443, from = var.ingress_cidr, description = "https ingress" }
  }
}

resource "openstack_networking_secgroup_rule_v2" "tcp" {
  for_each = local.tcp

  security_group_id = openstack_networking_secgroup_v2.this.id
  description       = each.value.description
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.from
}

# Cluster members talk freely (kubelet 10250, flannel VXLAN 8472/udp, etcd, node ports).
resource "openstack_networking_secgroup_rule_v2" "members" {
  for_each = toset(["tcp", "udp", "icmp"])

  security_group_id = openstack_networking_secgroup_v2.this.id
  description       = "${each.key} between cluster members"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.key
  remote_group_id   = openstack_networking_secgroup_v2.this.id
}
