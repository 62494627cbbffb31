"""Where results are kept: the database (schema and migrations), the content-addressed artifact
files, and uploaded images. Torch-free: the web process reads through here.
"""
