# Deployments made when the admin and the ingress rules were two resources keep their rules.

moved {
  from = openstack_networking_secgroup_rule_v2.admin["ssh"]
  to   = openstack_networking_secgroup_rule_v2.tcp["ssh"]
}

moved {
  from = openstack_networking_secgroup_rule_v2.admin["kube_api"]
  to   = openstack_networking_secgroup_rule_v2.tcp["kube_api"]
}

moved {
  from = openstack_networking_secgroup_rule_v2.ingress["http"]
  to   = openstack_networking_secgroup_rule_v2.tcp["http"]
}

moved {
  from = openstack_networking_secgroup_rule_v2.ingress["https"]
  to   = openstack_networking_secgroup_rule_v2.tcp["https"]
}
