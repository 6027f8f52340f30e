package dlpipe.sql;

import java.lang.reflect.Field;

import org.apache.hive.service.Service;
import org.apache.hive.service.cli.session.SessionManager;
import org.apache.hive.service.cli.thrift.ThriftBinaryCLIService;
import org.apache.hive.service.server.HiveServer2;
import org.apache.thrift.server.TServer;
import org.apache.thrift.transport.TSocket;
import org.apache.thrift.transport.TTransport;
import org.apache.thrift.transport.TTransportException;
import org.apache.thrift.transport.TTransportFactory;

/**
 * Tells the login checker ({@link PasswordFile}) which address a client connects from, over the binary transport
 * too: Hive sets the address for the requests that follow a login, while the password is checked before, as the
 * connection opens. This factory of the server's connections wraps Hive's: it notes the client's address for the
 * thread that opens the connection (and checks the password), then lets Hive's open it.
 */
public final class ClientAddress extends TTransportFactory {
    private final TTransportFactory hive;

    private ClientAddress(TTransportFactory hive) {
        this.hive = hive;
    }

    /** Wrap the connection factory of each binary Thrift service of {@code server}, once it has started. */
    public static void install(HiveServer2 server) throws ReflectiveOperationException {
        for (Service service : server.getServices()) {
            if (service instanceof ThriftBinaryCLIService) {
                TServer thrift = (TServer) field(ThriftBinaryCLIService.class, "server").get(service);
                Field factory = field(TServer.class, "inputTransportFactory_");
                TTransportFactory current = (TTransportFactory) factory.get(thrift);
                if (!(current instanceof ClientAddress)) {
                    factory.set(thrift, new ClientAddress(current));
                }
            }
        }
    }

    @Override
    public TTransport getTransport(TTransport connection) throws TTransportException {
        if (!(connection instanceof TSocket) || ((TSocket) connection).getSocket() == null) {
            return hive.getTransport(connection);
        }
        SessionManager.setIpAddress(((TSocket) connection).getSocket().getInetAddress().getHostAddress());
        try {
            return hive.getTransport(connection);
        } finally {
            SessionManager.clearIpAddress();
        }
    }

    private static Field field(Class<?> type, String name) throws NoSuchFieldException {
        Field field = type.getDeclaredField(name);
        field.setAccessible(true);
        return field;
    }
}
