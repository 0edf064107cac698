#!/bin/sh
# Hardens and finishes the sandpool Python image. It runs as root inside the
# image's root filesystem: via chroot after debootstrap (sandpool image
# build), or as a RUN step of the Containerfile. Both builds share it, so
# they produce the same image.
set -eu

# No setuid/setgid programs: nothing in a sandbox may gain privileges.
find / -xdev -type f \( -perm -4000 -o -perm -2000 \) -exec chmod ug-s {} +

# The unprivileged user (sandpool runs each sandbox under its own random
# uid; this user is the default for anything else that runs the image).
getent group sandbox >/dev/null || groupadd -g 1000 sandbox
getent passwd sandbox >/dev/null || useradd -u 1000 -g 1000 -d /tmp -M -s /usr/sbin/nologin sandbox

# Mount points: the data directory and the agent directory. sandpool mounts
# tmpfs on /tmp and /mnt/data, and runc gives a tmpfs the mode of the
# directory it covers: both must be writable by any (random) sandbox uid.
mkdir -p /mnt/data /opt/sandpool
chmod 0755 /opt/sandpool
chmod 1777 /tmp /mnt/data

# No host entries and no resolver: the image's own files are used as they
# are (sandpool tells podman not to generate them).
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
: > /etc/resolv.conf
echo sandbox > /etc/hostname

# No private keys or credentials baked in.
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem

# Smaller: package caches and documentation.
rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* \
       /usr/share/doc/* /usr/share/man/* /usr/share/info/* /var/log/*.log

# Fail the build if the checks above did not hold.
test -z "$(find / -xdev -type f \( -perm -4000 -o -perm -2000 \) -print -quit)"
python3 -c 'import IPython, numpy, pandas, matplotlib, scipy, sympy, sklearn, seaborn, PIL, openpyxl, bs4, lxml, yaml, tabulate, requests'
