"""cellbench OSI device: Keysight 34970A / DAQ970A-family data loggers over SCPI."""
