//! Confinement applied inside the sandbox: capabilities, no_new_privs, seccomp, Landlock.
