"""Real test targets started by the suite: sshd on loopback, network-namespace VMs, a WinRM server, QEMU."""
