"""cellbench climate chamber binder: Binder MB1/MB2 controllers over Modbus, and their emulator."""
