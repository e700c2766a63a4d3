//! The `ObjectStore` methods a wrapping store passes straight to the store
//! it wraps, written once: a wrapper that only guards writes ([`gate`],
//! [`locked`]) names what it changes and takes the reads from here, so the
//! two cannot drift apart in how they read.
//!
//! [`gate`]: super::gate
//! [`locked`]: super::locked

/// `#[async_trait] impl ObjectStore for $ty` with the caller's own methods
/// and `get_opts`, `delete_stream`, `list` and `list_with_delimiter`
/// forwarded to `self.$inner`. The impl is emitted whole (not the
/// forwarded methods alone) so `async_trait` sees every `async fn`.
macro_rules! wrapping_store {
    ($ty:ty, $inner:ident; $($own:tt)*) => {
        #[::async_trait::async_trait]
        impl ::object_store::ObjectStore for $ty {
            $($own)*

            async fn get_opts(
                &self,
                location: &::object_store::path::Path,
                options: ::object_store::GetOptions,
            ) -> ::object_store::Result<::object_store::GetResult> {
                self.$inner.get_opts(location, options).await
            }

            fn delete_stream(
                &self,
                locations: ::futures::stream::BoxStream<
                    'static,
                    ::object_store::Result<::object_store::path::Path>,
                >,
            ) -> ::futures::stream::BoxStream<'static, ::object_store::Result<::object_store::path::Path>>
            {
                self.$inner.delete_stream(locations)
            }

            fn list(
                &self,
                prefix: Option<&::object_store::path::Path>,
            ) -> ::futures::stream::BoxStream<'static, ::object_store::Result<::object_store::ObjectMeta>>
            {
                self.$inner.list(prefix)
            }

            async fn list_with_delimiter(
                &self,
                prefix: Option<&::object_store::path::Path>,
            ) -> ::object_store::Result<::object_store::ListResult> {
                self.$inner.list_with_delimiter(prefix).await
            }
        }
    };
}
