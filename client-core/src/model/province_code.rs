//! The provinces of Thailand as ISO 3166-2:TH names them: the 76 provinces, Bangkok (TH-10, the
//! metropolitan administration) and Pattaya (TH-S, the special administrative city), each with its
//! Thai and English name. Every province code that enters the model is checked against this table,
//! so a typo can never create a document nobody else will ever sync.

use std::fmt;
use std::str::FromStr;

use super::error::{ModelError, Result};

/// One row of the ISO 3166-2:TH table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvinceInfo {
    /// The ISO 3166-2 code, e.g. `TH-44`.
    pub code: &'static str,
    /// The name in Thai, e.g. `มหาสารคาม`.
    pub name_th: &'static str,
    /// The name in English as ISO 3166-2 spells it, e.g. `Maha Sarakham`.
    pub name_en: &'static str,
}

const fn p(code: &'static str, name_th: &'static str, name_en: &'static str) -> ProvinceInfo {
    ProvinceInfo {
        code,
        name_th,
        name_en,
    }
}

/// Every ISO 3166-2:TH subdivision, in code order (TH-S last).
pub const PROVINCES: [ProvinceInfo; 78] = [
    p("TH-10", "กรุงเทพมหานคร", "Krung Thep Maha Nakhon (Bangkok)"),
    p("TH-11", "สมุทรปราการ", "Samut Prakan"),
    p("TH-12", "นนทบุรี", "Nonthaburi"),
    p("TH-13", "ปทุมธานี", "Pathum Thani"),
    p("TH-14", "พระนครศรีอยุธยา", "Phra Nakhon Si Ayutthaya"),
    p("TH-15", "อ่างทอง", "Ang Thong"),
    p("TH-16", "ลพบุรี", "Lop Buri"),
    p("TH-17", "สิงห์บุรี", "Sing Buri"),
    p("TH-18", "ชัยนาท", "Chai Nat"),
    p("TH-19", "สระบุรี", "Saraburi"),
    p("TH-20", "ชลบุรี", "Chon Buri"),
    p("TH-21", "ระยอง", "Rayong"),
    p("TH-22", "จันทบุรี", "Chanthaburi"),
    p("TH-23", "ตราด", "Trat"),
    p("TH-24", "ฉะเชิงเทรา", "Chachoengsao"),
    p("TH-25", "ปราจีนบุรี", "Prachin Buri"),
    p("TH-26", "นครนายก", "Nakhon Nayok"),
    p("TH-27", "สระแก้ว", "Sa Kaeo"),
    p("TH-30", "นครราชสีมา", "Nakhon Ratchasima"),
    p("TH-31", "บุรีรัมย์", "Buri Ram"),
    p("TH-32", "สุรินทร์", "Surin"),
    p("TH-33", "ศรีสะเกษ", "Si Sa Ket"),
    p("TH-34", "อุบลราชธานี", "Ubon Ratchathani"),
    p("TH-35", "ยโสธร", "Yasothon"),
    p("TH-36", "ชัยภูมิ", "Chaiyaphum"),
    p("TH-37", "อำนาจเจริญ", "Amnat Charoen"),
    p("TH-38", "บึงกาฬ", "Bueng Kan"),
    p("TH-39", "หนองบัวลำภู", "Nong Bua Lam Phu"),
    p("TH-40", "ขอนแก่น", "Khon Kaen"),
    p("TH-41", "อุดรธานี", "Udon Thani"),
    p("TH-42", "เลย", "Loei"),
    p("TH-43", "หนองคาย", "Nong Khai"),
    p("TH-44", "มหาสารคาม", "Maha Sarakham"),
    p("TH-45", "ร้อยเอ็ด", "Roi Et"),
    p("TH-46", "กาฬสินธุ์", "Kalasin"),
    p("TH-47", "สกลนคร", "Sakon Nakhon"),
    p("TH-48", "นครพนม", "Nakhon Phanom"),
    p("TH-49", "มุกดาหาร", "Mukdahan"),
    p("TH-50", "เชียงใหม่", "Chiang Mai"),
    p("TH-51", "ลำพูน", "Lamphun"),
    p("TH-52", "ลำปาง", "Lampang"),
    p("TH-53", "อุตรดิตถ์", "Uttaradit"),
    p("TH-54", "แพร่", "Phrae"),
    p("TH-55", "น่าน", "Nan"),
    p("TH-56", "พะเยา", "Phayao"),
    p("TH-57", "เชียงราย", "Chiang Rai"),
    p("TH-58", "แม่ฮ่องสอน", "Mae Hong Son"),
    p("TH-60", "นครสวรรค์", "Nakhon Sawan"),
    p("TH-61", "อุทัยธานี", "Uthai Thani"),
    p("TH-62", "กำแพงเพชร", "Kamphaeng Phet"),
    p("TH-63", "ตาก", "Tak"),
    p("TH-64", "สุโขทัย", "Sukhothai"),
    p("TH-65", "พิษณุโลก", "Phitsanulok"),
    p("TH-66", "พิจิตร", "Phichit"),
    p("TH-67", "เพชรบูรณ์", "Phetchabun"),
    p("TH-70", "ราชบุรี", "Ratchaburi"),
    p("TH-71", "กาญจนบุรี", "Kanchanaburi"),
    p("TH-72", "สุพรรณบุรี", "Suphan Buri"),
    p("TH-73", "นครปฐม", "Nakhon Pathom"),
    p("TH-74", "สมุทรสาคร", "Samut Sakhon"),
    p("TH-75", "สมุทรสงคราม", "Samut Songkhram"),
    p("TH-76", "เพชรบุรี", "Phetchaburi"),
    p("TH-77", "ประจวบคีรีขันธ์", "Prachuap Khiri Khan"),
    p("TH-80", "นครศรีธรรมราช", "Nakhon Si Thammarat"),
    p("TH-81", "กระบี่", "Krabi"),
    p("TH-82", "พังงา", "Phangnga"),
    p("TH-83", "ภูเก็ต", "Phuket"),
    p("TH-84", "สุราษฎร์ธานี", "Surat Thani"),
    p("TH-85", "ระนอง", "Ranong"),
    p("TH-86", "ชุมพร", "Chumphon"),
    p("TH-90", "สงขลา", "Songkhla"),
    p("TH-91", "สตูล", "Satun"),
    p("TH-92", "ตรัง", "Trang"),
    p("TH-93", "พัทลุง", "Phatthalung"),
    p("TH-94", "ปัตตานี", "Pattani"),
    p("TH-95", "ยะลา", "Yala"),
    p("TH-96", "นราธิวาส", "Narathiwat"),
    p("TH-S", "พัทยา", "Phatthaya (Pattaya)"),
];

/// A validated ISO 3166-2:TH code (an index into [`PROVINCES`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProvinceCode(u8);

impl ProvinceCode {
    /// Looks a code up, accepting only exact ISO spellings such as `TH-44` or `TH-S`.
    pub fn parse(code: &str) -> Result<Self> {
        PROVINCES
            .iter()
            .position(|info| info.code == code)
            .and_then(|index| u8::try_from(index).ok())
            .map(Self)
            .ok_or_else(|| ModelError::UnknownProvince(code.to_owned()))
    }

    /// Every code, in table order.
    pub fn all() -> impl Iterator<Item = ProvinceCode> {
        (0..PROVINCES.len()).filter_map(|index| u8::try_from(index).ok().map(Self))
    }

    /// The table row of this code.
    pub fn info(self) -> &'static ProvinceInfo {
        // The index is only ever built from a position inside PROVINCES.
        PROVINCES.get(usize::from(self.0)).unwrap_or(&PROVINCES[0])
    }

    /// The ISO code, e.g. `TH-44`.
    pub fn as_str(self) -> &'static str {
        self.info().code
    }

    /// The Thai name, e.g. `มหาสารคาม`.
    pub fn name_th(self) -> &'static str {
        self.info().name_th
    }

    /// The English name, e.g. `Maha Sarakham`.
    pub fn name_en(self) -> &'static str {
        self.info().name_en
    }
}

impl FromStr for ProvinceCode {
    type Err = ModelError;
    fn from_str(code: &str) -> Result<Self> {
        Self::parse(code)
    }
}

impl AsRef<str> for ProvinceCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for ProvinceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ProvinceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProvinceCode({})", self.as_str())
    }
}
