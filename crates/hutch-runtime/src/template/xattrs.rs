//! Extended attributes, never following symlinks, with errors that name the path.
//!
//! Two families matter to templates: `trusted.overlay.*` (overlayfs bookkeeping in an upper
//! layer: opaque directories, copy-up origins — meaningful only to the overlay that wrote them)
//! and `security.capability` (file capabilities, which `chown` clears and which a user namespace
//! honours only in their namespaced v3 form).

use std::ffi::OsString;
use std::path::Path;

use super::{io_err, TemplateError};

/// Prefix of the attributes overlayfs keeps in its layers (the mount is made by real root, so
/// the `trusted.` namespace, not `user.`).
pub(super) const OVERLAY_PREFIX: &str = "trusted.overlay.";
/// File capabilities.
pub(super) const CAPABILITY: &str = "security.capability";

/// Every attribute name of `path` (empty where the filesystem has none).
pub(super) fn list(path: &Path) -> Result<Vec<OsString>, TemplateError> {
    match xattr::list(path) {
        Ok(names) => Ok(names.collect()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(io_err("listxattr", path)(e)),
    }
}

/// The value of attribute `name`, if set.
pub(super) fn get(path: &Path, name: &str) -> Result<Option<Vec<u8>>, TemplateError> {
    match xattr::get(path, name) {
        Ok(v) => Ok(v),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
        Err(e) => Err(io_err("getxattr", path)(e)),
    }
}

/// Sets attribute `name`.
pub(super) fn set(path: &Path, name: &str, value: &[u8]) -> Result<(), TemplateError> {
    xattr::set(path, name, value).map_err(io_err("setxattr", path))
}

/// Removes every `trusted.overlay.*` attribute of `path`.
pub(super) fn strip_overlay(path: &Path) -> Result<(), TemplateError> {
    for name in list(path)? {
        if name.to_string_lossy().starts_with(OVERLAY_PREFIX) {
            match xattr::remove(path, &name) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(io_err("removexattr", path)(e)),
            }
        }
    }
    Ok(())
}

/// Copies every attribute of `src` to `dst` except overlayfs' own.
pub(super) fn copy_except_overlay(src: &Path, dst: &Path) -> Result<(), TemplateError> {
    for name in list(src)? {
        let text = name.to_string_lossy();
        if text.starts_with(OVERLAY_PREFIX) {
            continue;
        }
        if let Some(value) = get(src, &text)? {
            xattr::set(dst, &name, &value).map_err(io_err("setxattr", dst))?;
        }
    }
    Ok(())
}

/// Layout of `security.capability` (`struct vfs_cap_data` / `vfs_ns_cap_data`).
const CAP_REVISION_MASK: u32 = 0xFF00_0000;
const CAP_REVISION_2: u32 = 0x0200_0000;
const CAP_REVISION_3: u32 = 0x0300_0000;
const CAP_V2_LEN: usize = 20;
const CAP_V3_LEN: usize = 24;

/// Rewrites a file-capability value for a sandbox whose root is host uid `root_uid`.
///
/// A v2 value (what `setcap` writes as host root, e.g. during `mmdebstrap`) belongs to the
/// initial user namespace and is ignored inside a sandbox's; the v3 form names the namespace's
/// root by its host uid. Returns None for a value of unknown layout (left as it was).
pub(super) fn namespaced_capability(value: &[u8], root_uid: u32) -> Option<Vec<u8>> {
    let magic = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
    let data = match (magic & CAP_REVISION_MASK, value.len()) {
        (CAP_REVISION_2, CAP_V2_LEN) | (CAP_REVISION_3, CAP_V3_LEN) => &value[4..CAP_V2_LEN],
        _ => return None,
    };
    let mut out = Vec::with_capacity(CAP_V3_LEN);
    out.extend_from_slice(&((magic & !CAP_REVISION_MASK) | CAP_REVISION_3).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&root_uid.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_capabilities_become_namespaced() {
        // cap_net_raw+ep as setcap writes it (v2, effective flag set).
        let mut v2 = Vec::new();
        v2.extend_from_slice(&(CAP_REVISION_2 | 1).to_le_bytes());
        v2.extend_from_slice(&(1u32 << 13).to_le_bytes());
        v2.extend_from_slice(&[0u8; 12]);
        let v3 = namespaced_capability(&v2, 100_000).unwrap();
        assert_eq!(v3.len(), CAP_V3_LEN);
        assert_eq!(&v3[..4], &(CAP_REVISION_3 | 1).to_le_bytes());
        assert_eq!(&v3[4..8], &(1u32 << 13).to_le_bytes());
        assert_eq!(&v3[20..], &100_000u32.to_le_bytes());
        // Re-namespacing a v3 value replaces its root.
        let again = namespaced_capability(&v3, 200_000).unwrap();
        assert_eq!(&again[20..], &200_000u32.to_le_bytes());
        assert!(namespaced_capability(&[1, 2, 3], 1).is_none());
    }
}
