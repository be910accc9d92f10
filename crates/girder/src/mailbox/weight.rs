use std::mem::size_of;
use std::sync::Arc;

/// How many bytes a message counts for against a mailbox's byte bound and the node's
/// mailbox budget.
///
/// The default is the message's inline size (`size_of_val`). Messages that own heap
/// memory should add it, so that a flood of large payloads hits the byte bound long
/// before memory runs out; girder's impls for `String`, `Vec<u8>`, [`bytes::Bytes`],
/// `Box`, `Option` and tuples do.
///
/// # Examples
///
/// ```
/// use girder::Weight;
///
/// enum Msg {
///     Ping,
///     Upload(Vec<u8>),
/// }
///
/// impl Weight for Msg {
///     fn weight(&self) -> usize {
///         std::mem::size_of::<Self>()
///             + match self {
///                 Msg::Ping => 0,
///                 Msg::Upload(data) => data.capacity(),
///             }
///     }
/// }
///
/// assert!(Msg::Upload(vec![0; 4096]).weight() > 4096);
///
/// // A message without heap data can take the default.
/// struct Tick;
/// impl Weight for Tick {}
/// assert_eq!(Tick.weight(), 0);
/// ```
pub trait Weight {
    /// The message's weight in bytes. Keep it cheap: it runs on every send.
    fn weight(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

macro_rules! inline_weight {
    ($($t:ty),*) => { $(impl Weight for $t {})* };
}
inline_weight!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64
);
inline_weight!(std::time::Duration, std::time::Instant, crate::Pid);

impl Weight for String {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.capacity()
    }
}

impl Weight for &'static str {}

impl<T: Weight> Weight for Vec<T> {
    fn weight(&self) -> usize {
        size_of::<Self>()
            + (self.capacity() - self.len()) * size_of::<T>()
            + self.iter().map(Weight::weight).sum::<usize>()
    }
}

impl Weight for bytes::Bytes {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.len()
    }
}

impl Weight for bytes::BytesMut {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.capacity()
    }
}

impl<T: Weight + ?Sized> Weight for Box<T> {
    fn weight(&self) -> usize {
        size_of::<Self>() + (**self).weight()
    }
}

/// Shared data counts in full: the queue keeps it alive.
impl<T: Weight + ?Sized> Weight for Arc<T> {
    fn weight(&self) -> usize {
        size_of::<Self>() + (**self).weight()
    }
}

impl Weight for str {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl<T: Weight> Weight for [T] {
    fn weight(&self) -> usize {
        self.iter().map(Weight::weight).sum()
    }
}

impl<T: Weight> Weight for Option<T> {
    fn weight(&self) -> usize {
        match self {
            Some(v) => size_of::<Self>() - size_of::<T>() + v.weight(),
            None => size_of::<Self>(),
        }
    }
}

macro_rules! tuple_weight {
    ($($name:ident),+) => {
        impl<$($name: Weight),+> Weight for ($($name,)+) {
            #[allow(non_snake_case)]
            fn weight(&self) -> usize {
                let ($($name,)+) = self;
                0 $(+ $name.weight())+
            }
        }
    };
}
tuple_weight!(A);
tuple_weight!(A, B);
tuple_weight!(A, B, C);
tuple_weight!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_owning_types_count_their_heap() {
        let s = String::with_capacity(100);
        assert_eq!(s.weight(), size_of::<String>() + 100);
        let v: Vec<u8> = vec![1; 1000];
        assert!(v.weight() >= 1000 + size_of::<Vec<u8>>());
        let b = bytes::Bytes::from(vec![0u8; 512]);
        assert_eq!(b.weight(), size_of::<bytes::Bytes>() + 512);
        assert_eq!(42u64.weight(), 8);
        assert_eq!(
            (1u32, String::with_capacity(10)).weight(),
            4 + size_of::<String>() + 10
        );
    }
}
