"""cellbench OSI device: smart batteries (Smart Battery Data Specification 1.1) over SMBus."""
