"""Prints the PEM certificate a TLS server presents (no verification).

usage: server_cert.py HOST PORT
"""
import ssl
import sys

print(ssl.get_server_certificate((sys.argv[1], int(sys.argv[2]))))
