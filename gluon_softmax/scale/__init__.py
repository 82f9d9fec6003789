"""Scale-out: devices, worker processes, the data-parallel epoch and the launcher's hosts.

It wraps the chapter's pieces from outside and never imports run management
(``gluon_softmax.run``): the programs wire the two. Importing this package loads no
MXNet, so a program can list :data:`KVSTORES` in its flags before MXNet loads.
"""

# how gradients are summed: over the devices of one process, or over a job's workers
KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync')
