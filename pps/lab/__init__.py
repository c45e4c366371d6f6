"""The lab: network namespaces joined by multi-queue veth, a host that stands in for a NIC."""
