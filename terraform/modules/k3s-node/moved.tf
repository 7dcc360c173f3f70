# Deployments made before the server and the agents shared this module (modules k3s-server and
# k3s-agents) keep their nodes: their state moves here, nothing is rebuilt.

moved {
  from = openstack_compute_instance_v2.server
  to   = openstack_compute_instance_v2.this[0]
}

moved {
  from = openstack_compute_instance_v2.agent
  to   = openstack_compute_instance_v2.this
}

moved {
  from = openstack_networking_port_v2.server
  to   = openstack_networking_port_v2.server[0]
}

moved {
  from = openstack_networking_floatingip_associate_v2.server
  to   = openstack_networking_floatingip_associate_v2.server[0]
}
