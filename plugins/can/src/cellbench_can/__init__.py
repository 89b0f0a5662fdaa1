"""CAN buses as cellbench OSI devices: python-can for the bus, cantools for the database."""
