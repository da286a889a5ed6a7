"""The addresses of examples/pe1.toml (and of the hosts around it), written out by hand for
gen_cases.py and check_case.py. Keep in step with the TOML when it changes."""

# The router's ports.
CE_RED_MAC = "02:00:00:00:01:01"
CE_RED2_MAC = "02:00:00:00:01:03"
CE_BLUE_MAC = "02:00:00:00:01:02"
CE_L2_MAC = "02:00:00:00:02:01"
CORE0_MAC = "02:00:00:00:00:01"
CORE1_MAC = "02:00:00:00:00:02"

CE_RED_IP = "10.1.0.1"  # also ce-blue's address (the VRFs overlap)
CE_RED2_IP = "10.3.0.1"
CORE0_IP = "192.0.2.1"
CORE1_IP = "192.0.2.5"
ROUTER_ID = "10.255.0.1"
VTEP = "10.255.0.1"

# Static neighbours.
RED_HOST, RED_HOST_MAC = "10.1.0.2", "02:aa:00:00:00:02"  # on ce-red
RED2_HOST, RED2_HOST_MAC = "10.3.0.2", "02:aa:00:00:00:03"  # on ce-red2
BLUE_HOST, BLUE_HOST_MAC = "10.1.0.2", "02:bb:00:00:00:02"  # on ce-blue
P0_IP, P0_MAC = "192.0.2.2", "02:cc:00:00:00:02"  # core0's neighbour
P1_IP, P1_MAC = "192.0.2.6", "02:cc:00:00:00:06"  # core1's neighbour

# Remote PEs / VTEPs.
PE2 = "10.255.0.2"  # over core0
PE3 = "10.255.0.3"  # over core0 with transport label 300
PE4 = "10.255.0.4"  # ECMP over core0 and core1

# Bridge domain bd100.
BD_VNI = 100
L3_VNI = 5000
REMOTE_L2_MAC = "02:ee:00:00:00:09"  # behind PE2, with ARP binding 10.100.0.9
REMOTE_L2_IP = "10.100.0.9"
ROUTER_MAC_PE2 = "02:dd:00:00:00:02"
L2_HOST, L2_HOST_MAC = "10.100.0.10", "02:ee:00:00:00:10"  # a host on ce-l2 (learned there)
REMOTE_L2_MAC_B = "02:ee:00:00:00:0a"  # a remote host, learned behind pe2 from VXLAN

BROADCAST = "ff:ff:ff:ff:ff:ff"
VXLAN_PORT = 4789
