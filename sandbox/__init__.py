"""Disposable Debian 12 test hosts: systemd-nspawn containers in their own network namespaces."""
