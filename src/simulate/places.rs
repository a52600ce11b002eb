//! Where simulated swipes happen: twelve large Chinese cities, their districts (GB/T 2260
//! six-digit codes) and a deterministic set of merchants in each.

use rand::Rng;
use swipeguard_detectors::MerchantKind;

pub struct City {
    pub name: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub districts: &'static [&'static str],
    /// Relative share of cards living there.
    pub weight: u32,
}

pub const CITIES: &[City] = &[
    City {
        name: "beijing",
        lat: 39.9042,
        lon: 116.4074,
        districts: &["110101", "110102", "110105", "110108"],
        weight: 9,
    },
    City {
        name: "shanghai",
        lat: 31.2304,
        lon: 121.4737,
        districts: &["310101", "310104", "310105", "310115"],
        weight: 10,
    },
    City {
        name: "guangzhou",
        lat: 23.1291,
        lon: 113.2644,
        districts: &["440103", "440104", "440106"],
        weight: 7,
    },
    City {
        name: "shenzhen",
        lat: 22.5431,
        lon: 114.0579,
        districts: &["440303", "440304", "440305"],
        weight: 7,
    },
    City {
        name: "chengdu",
        lat: 30.5728,
        lon: 104.0668,
        districts: &["510104", "510105", "510107"],
        weight: 8,
    },
    City {
        name: "hangzhou",
        lat: 30.2741,
        lon: 120.1551,
        districts: &["330102", "330105", "330106"],
        weight: 5,
    },
    City {
        name: "wuhan",
        lat: 30.5928,
        lon: 114.3055,
        districts: &["420102", "420103", "420106"],
        weight: 5,
    },
    City {
        name: "xian",
        lat: 34.3416,
        lon: 108.9398,
        districts: &["610102", "610103", "610104"],
        weight: 5,
    },
    City {
        name: "nanjing",
        lat: 32.0603,
        lon: 118.7969,
        districts: &["320102", "320104", "320106"],
        weight: 4,
    },
    City {
        name: "chongqing",
        lat: 29.5630,
        lon: 106.5516,
        districts: &["500103", "500105", "500106"],
        weight: 9,
    },
    City {
        name: "tianjin",
        lat: 39.3434,
        lon: 117.3616,
        districts: &["120101", "120102", "120103"],
        weight: 5,
    },
    City {
        name: "shenyang",
        lat: 41.8057,
        lon: 123.4315,
        districts: &["210102", "210103", "210104"],
        weight: 4,
    },
];

/// A place that takes swipes.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub id: String,
    pub kind: MerchantKind,
    pub mcc: &'static str,
    pub city: usize,
    pub region: &'static str,
    pub lat: f64,
    pub lon: f64,
}

/// Merchants per city and kind: hospitals, clinics, pharmacies, other shops.
const PER_KIND: [(MerchantKind, &str, &str, usize); 4] = [
    (MerchantKind::Hospital, "H", "8062", 12),
    (MerchantKind::Clinic, "C", "8011", 30),
    (MerchantKind::Pharmacy, "P", "5912", 60),
    (MerchantKind::Other, "S", "5411", 20),
];

/// The merchant `n` of `kind` in `city`: placed within about 15 km of the centre, in one of
/// the city's districts. A pure function of its arguments, so no table is needed.
pub fn merchant(city: usize, kind: MerchantKind, n: usize) -> Merchant {
    let c = &CITIES[city];
    let (_, prefix, mcc, count) = PER_KIND[kind.index()];
    let n = n % count;
    // A fixed scatter from the indices (golden-ratio steps), not from the random stream.
    let a = ((n as f64 + 1.0) * 0.618_033_988_75 + city as f64 * 0.1).fract();
    let b = ((n as f64 + 1.0) * 0.754_877_666_2 + kind.index() as f64 * 0.3).fract();
    Merchant {
        id: format!("{prefix}{city:02}{n:03}"),
        kind,
        mcc,
        city,
        region: c.districts[n % c.districts.len()],
        lat: c.lat + (a - 0.5) * 0.27,
        lon: c.lon + (b - 0.5) * 0.3,
    }
}

pub fn merchants_of(kind: MerchantKind) -> usize {
    PER_KIND[kind.index()].3
}

/// A city drawn by population weight.
pub fn pick_city(rng: &mut impl Rng) -> usize {
    let total: u32 = CITIES.iter().map(|c| c.weight).sum();
    let mut x = rng.random_range(0..total);
    for (i, c) in CITIES.iter().enumerate() {
        if x < c.weight {
            return i;
        }
        x -= c.weight;
    }
    0
}

/// A city at least `min_km` from `from`.
pub fn far_city(rng: &mut impl Rng, from: usize, min_km: f64) -> usize {
    let far: Vec<usize> = (0..CITIES.len())
        .filter(|&c| distance_km(from, c) >= min_km)
        .collect();
    if far.is_empty() {
        return (from + CITIES.len() / 2) % CITIES.len();
    }
    far[rng.random_range(0..far.len())]
}

pub fn distance_km(a: usize, b: usize) -> f64 {
    use swipeguard_detectors::detectors::impossible_travel::haversine_km;
    use swipeguard_detectors::GeoPoint;
    let p = |c: usize| GeoPoint {
        lat: CITIES[c].lat,
        lon: CITIES[c].lon,
    };
    haversine_km(p(a), p(b))
}
