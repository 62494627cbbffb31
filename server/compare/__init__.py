"""Runs side by side: their layers' index distributions, and their neurons' changes."""
