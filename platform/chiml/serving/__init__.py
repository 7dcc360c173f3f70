"""Model endpoints: the backend interface, the local backend and the V2 prediction client.

* :mod:`chiml.serving.backend` - ``Endpoint``, ``Scaling`` and ``EndpointBackend`` (the interface
  the local and the KServe backends implement);
* :mod:`chiml.serving.local` - endpoints as supervised ``python -m chiml_serving`` replicas;
* :mod:`chiml.serving.front` - the HAProxy front that gives a local endpoint its one URL;
* :mod:`chiml.serving.autoscale` - the local autoscaler (concurrency or CPU per replica);
* :mod:`chiml.serving.artifacts` - ``models:/`` and ``runs:/`` URIs to local model folders;
* :mod:`chiml.serving.client` - ``predict`` (numpy in, numpy out) over the V2 protocol.
"""
