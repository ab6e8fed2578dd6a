//! UEFI structures found in event data: UEFI_VARIABLE_DATA, UEFI_IMAGE_LOAD_EVENT and
//! device paths. All parsing here is best-effort (`None` on anything malformed): these
//! structures only ever feed boot claims, after their digest has been checked.

use crate::reader::Reader;

/// EFI_GLOBAL_VARIABLE: SecureBoot, PK, KEK, Boot####.
pub(crate) const EFI_GLOBAL_VARIABLE: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// A UEFI variable as measured: UEFI_VARIABLE_DATA (PFP 10.2.4).
pub(crate) struct UefiVariable<'a> {
    pub(crate) vendor_guid: String,
    pub(crate) name: String,
    pub(crate) data: &'a [u8],
}

impl<'a> UefiVariable<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        let mut reader = Reader::new(bytes);
        let guid = reader.array::<16>("VariableName").ok()?;
        let name_chars = usize::try_from(reader.u64("UnicodeNameLength").ok()?).ok()?;
        let data_len = usize::try_from(reader.u64("VariableDataLength").ok()?).ok()?;
        let name_bytes = reader
            .take(name_chars.checked_mul(2)?, "UnicodeName")
            .ok()?;
        let data = reader.take(data_len, "VariableData").ok()?;
        Some(Self {
            vendor_guid: guid_text(&guid),
            name: utf16_lossless(name_bytes)?,
            data,
        })
    }
}

/// The device path of a UEFI_IMAGE_LOAD_EVENT (PFP 10.2.3), as text.
pub(crate) fn image_device_path(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader::new(bytes);
    let _location = reader.u64("ImageLocationInMemory").ok()?;
    let _length = reader.u64("ImageLengthInMemory").ok()?;
    let _link_address = reader.u64("ImageLinkTimeAddress").ok()?;
    let path_len = usize::try_from(reader.u64("LengthOfDevicePath").ok()?).ok()?;
    let path = reader.take(path_len, "DevicePath").ok()?;
    if path.is_empty() {
        return None;
    }
    device_path_text(path)
}

/// EFI_DEVICE_PATH_PROTOCOL nodes as text, in the spirit of the UEFI text form: file paths,
/// hard-drive partitions, PCI and firmware-volume nodes are spelled out, others are given as
/// `Path(type,subtype)`.
pub(crate) fn device_path_text(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader::new(bytes);
    let mut nodes = Vec::new();
    while !reader.is_empty() {
        let node_type = reader.u8("Type").ok()?;
        let sub_type = reader.u8("SubType").ok()?;
        let len = usize::from(reader.u16("Length").ok()?);
        let body = reader.take(len.checked_sub(4)?, "node").ok()?;
        match (node_type, sub_type) {
            (0x7F, 0xFF) => break,
            (0x7F, _) => nodes.push(",".to_owned()),
            _ => nodes.push(node_text(node_type, sub_type, body)),
        }
    }
    Some(nodes.join("/"))
}

fn node_text(node_type: u8, sub_type: u8, body: &[u8]) -> String {
    let text = match (node_type, sub_type) {
        (0x01, 0x01) => pci_text(body),
        (0x02, 0x01) => acpi_text(body),
        (0x04, 0x01) => hard_drive_text(body),
        (0x04, 0x04) => utf16_lossless(body),
        (0x04, 0x06) => guid_of(body).map(|g| format!("FvFile({g})")),
        (0x04, 0x07) => guid_of(body).map(|g| format!("Fv({g})")),
        _ => None,
    };
    text.unwrap_or_else(|| format!("Path({node_type},{sub_type})"))
}

fn pci_text(body: &[u8]) -> Option<String> {
    let [function, device] = body else {
        return None;
    };
    Some(format!("Pci({device:#x},{function:#x})"))
}

fn acpi_text(body: &[u8]) -> Option<String> {
    let mut reader = Reader::new(body);
    let hid = reader.u32("HID").ok()?;
    let uid = reader.u32("UID").ok()?;
    // PNP0A03 / PNP0A08 are PCI(e) root bridges, encoded as EISA IDs.
    if hid == 0x0A03_41D0 || hid == 0x0A08_41D0 {
        return Some(format!("PciRoot({uid:#x})"));
    }
    Some(format!("Acpi({hid:#010x},{uid:#x})"))
}

fn hard_drive_text(body: &[u8]) -> Option<String> {
    let mut reader = Reader::new(body);
    let partition = reader.u32("PartitionNumber").ok()?;
    let _start = reader.u64("PartitionStart").ok()?;
    let _size = reader.u64("PartitionSize").ok()?;
    let signature = reader.array::<16>("PartitionSignature").ok()?;
    let _format = reader.u8("PartitionFormat").ok()?;
    let signature_type = reader.u8("SignatureType").ok()?;
    let signature = if signature_type == 2 {
        guid_text(&signature)
    } else {
        hex::encode(signature)
    };
    Some(format!("HD({partition},{signature})"))
}

fn guid_of(bytes: &[u8]) -> Option<String> {
    let guid: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(guid_text(&guid))
}

/// An EFI_GUID in its registry form (first three fields little-endian).
pub(crate) fn guid_text(guid: &[u8; 16]) -> String {
    let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = guid;
    format!(
        "{:08x}-{:04x}-{:04x}-{}-{}",
        u32::from_le_bytes([*a0, *a1, *a2, *a3]),
        u16::from_le_bytes([*b0, *b1]),
        u16::from_le_bytes([*c0, *c1]),
        hex::encode(rest.get(..2).unwrap_or_default()),
        hex::encode(rest.get(2..).unwrap_or_default()),
    )
}

/// UTF-16LE up to the first NUL; `None` if it is not valid UTF-16 or has an odd length.
fn utf16_lossless(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| {
            u16::from_le_bytes([
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|unit| *unit != 0)
        .collect();
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_in_registry_form() {
        let guid = [
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c,
        ];
        assert_eq!(guid_text(&guid), EFI_GLOBAL_VARIABLE);
    }

    #[test]
    fn file_path_node() {
        let mut path = vec![0x04, 0x04, 0, 0];
        let name: Vec<u8> = "\\EFI\\BOOT\\BOOTX64.EFI\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        path[2] = u8::try_from(name.len() + 4).unwrap();
        path.extend(name);
        path.extend([0x7F, 0xFF, 4, 0]);
        assert_eq!(
            device_path_text(&path).as_deref(),
            Some("\\EFI\\BOOT\\BOOTX64.EFI")
        );
        // A node shorter than its own header is malformed, not a panic.
        assert_eq!(device_path_text(&[0x04, 0x04, 2, 0]), None);
    }
}
