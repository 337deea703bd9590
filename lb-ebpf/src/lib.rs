//! Empty library target: lets lb-userspace declare a build-dependency on this crate so cargo
//! rebuilds the XDP object when its sources change. The program itself is the `xlb` binary.
#![no_std]
