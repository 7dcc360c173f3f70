# Deployments made when each agent group had a module call of its own keep their agents.

moved {
  from = module.cpu_agents
  to   = module.agents["cpu"]
}

moved {
  from = module.gpu_agents
  to   = module.agents["gpu"]
}
