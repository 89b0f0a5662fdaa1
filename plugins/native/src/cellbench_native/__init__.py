"""cellbench-native: vendor driver libraries (cellbench_driver.h) as OSI devices and channel
banks, loaded with cffi in a host process of their own.

This package's top level imports nothing, so that the host process starts fast.
"""
