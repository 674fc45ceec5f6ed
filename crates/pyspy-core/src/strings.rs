//! Reading Python string and bytes objects from target memory.
