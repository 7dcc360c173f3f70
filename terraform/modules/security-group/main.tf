# KVM@TACC enforces security groups (all inbound is blocked by default); on bare metal they are
# not enforced and the same policy is applied by firewalld from cloud-init instead.

resource "openstack_networking_secgroup_v2" "this" {
  name                 = var.name
  description          = "chiml k3s cluster: SSH and the Kubernetes API from the admin CIDR, HTTP(S) ingress, all traffic between members"
  delete_default_rules = false
  tags                 = var.tags
}

# SSH and the Kubernetes API only from the operator's address.
resource "openstack_networking_secgroup_rule_v2" "admin" {
  for_each = { ssh = 22, kube_api = 6443 }

  security_group_id = openstack_networking_secgroup_v2.this.id
  description       = "${each.key} from the admin CIDR"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_ip_prefix  = var.admin_cidr
}

# The ingress controller (Traefik on k3s) serves endpoints and UIs.
resource "openstack_networking_secgroup_rule_v2" "ingress" {
  for_each = { http = 80, https = 443 }

  security_group_id = openstack_networking_secgroup_v2.this.id
  description       = "${each.key} ingress"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_ip_prefix  = var.ingress_cidr
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
